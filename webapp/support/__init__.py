"""The hidden support page (SPEC 8, S2): script jobs, their versions, and the child process that runs them."""

"""Clinical data formats: ODM 1.3 reading (odm), streaming export writers (writers), synthetic ODM files (synth). Pure Python: no Flask, no database."""

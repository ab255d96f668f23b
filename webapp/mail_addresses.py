"""Report recipients as a job stores them ("a@x.org, b@y.org"): read by the job form, which
refuses an address that is not one, and by the mailer, which records such an address on its
delivery instead (a job saved before a rule changed still reports to the rest)."""
from email_validator import EmailNotValidError, validate_email


def parse_recipients(text: str) -> list[str]:
    """'a@x.org; b@y.org,,A@x.org' -> ['a@x.org', 'b@y.org']: separated by commas, semicolons or
    line breaks, trimmed, without empty entries and without repeats (compared case-insensitively).
    Checks no address: see `valid_recipients`."""
    seen, result = set(), []
    for part in (text or "").replace(";", ",").replace("\n", ",").split(","):
        address = part.strip()
        if address and address.lower() not in seen:
            seen.add(address.lower())
            result.append(address)
    return result


def valid_recipients(text: str) -> list[str]:
    """parse_recipients(text) with each address checked and normalised; raises ValueError naming
    the first address that is not valid."""
    addresses = []
    for address in parse_recipients(text):
        try:
            valid = validate_email(address, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(f"“{address}” is not a valid email address: {exc}") from None
        if valid.normalized.lower() not in {a.lower() for a in addresses}:
            addresses.append(valid.normalized)
    return addresses

"""Values in the form the Docker provider reads them back, as pure functions.

Under the mocks every input comes back as sent; the real provider (kreuzwerker/terraform-provider-docker
v4.5.0, bridged by pulumi-docker 5.x) reads a container back from the engine and compares. An input
sent in another form than the one Read produces is a diff on every `pulumi up`: a replacement for a
ForceNew input (`cpus`), a perpetual in-place update otherwise (healthcheck durations). See
docs/docker-provider.md for every input the program sends.
"""

from __future__ import annotations

from fractions import Fraction

NANOS = 1_000_000_000


def _float_string(value: Fraction, digits: int) -> str:
    """Go's `big.Rat.FloatString(digits)`: round half away from zero to `digits` decimals."""
    scale = 10**digits
    scaled = abs(value) * scale
    whole = int(scaled)
    if scaled - whole >= Fraction(1, 2):
        whole += 1
    sign = "-" if value < 0 and whole else ""
    text = str(whole).rjust(digits + 1, "0")
    return f"{sign}{text[:-digits]}.{text[-digits:]}" if digits else f"{sign}{text}"


def cpus_value(cpu: float) -> str:
    """`cpus` exactly as the provider reads it back from NanoCPUs (helpers.go
    `nanoInt64ToDecimalString`, v4.5.0): nine decimals, trailing zeros trimmed, except that a string
    with exactly nine zeros in it is rendered with one decimal. So 1 is "1.0", 1.5 "1.5" and 10 "10."."""
    nanos = Fraction(round(Fraction(cpu) * NANOS), NANOS)
    text = _float_string(nanos, 9)
    if text.count("0") == 9:
        return _float_string(nanos, 1)
    return text.rstrip("0")


def cpus_round_trips(cpu: float) -> bool:
    """Whether `cpu` survives the provider's read-back: 0.05 reads back as "0.1", a perpetual
    replacement, so such a value must be refused rather than sent."""
    nanos = round(Fraction(cpu) * NANOS)
    return nanos > 0 and round(Fraction(cpus_value(cpu)) * NANOS) == nanos


def duration(seconds: int) -> str:
    """A healthcheck duration as Go's `time.Duration.String()` prints it, which is how the provider
    reads it back: 30 -> "30s", 120 -> "2m0s", 3600 -> "1h0m0s", 0 -> "0s"."""
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def memory_swap(memory_mb: int) -> int:
    """No swap: memory + swap = memory. Left unset, the engine stores twice the memory and the
    provider reads that back against an unset input: an update on every `pulumi up`."""
    return memory_mb

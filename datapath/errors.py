"""Exceptions the datapath raises; the drivers map them to HTTP statuses."""


class DatapathError(Exception):
    """A kernel step failed. ``step`` names it, e.g. "add bridge pt-1234"."""

    def __init__(self, step: str, cause: BaseException | str):
        self.step = step
        self.cause = cause
        super().__init__(f"{step}: {cause}")

    def __reduce__(self):
        # Both arguments, so the error crosses a process boundary (pickle)
        # as it was raised, as from a function run in another network
        # namespace's process (testbed.netns.run_in_netns).
        return type(self), (self.step, self.cause)


class NameConflict(Exception):
    """An interface name is held by something Pontoon may not take over."""


class NameTaken(NameConflict):
    """A name asked for as new is held already; the caller may try another."""


class InvalidName(ValueError):
    """An interface name the kernel would refuse (length or characters)."""


class UnsafeValue(DatapathError):
    """A value about to be written into ``iptables-restore`` input is empty
    or holds whitespace or a control character: it would split into tokens
    or lines of its own, i.e. into rules nobody asked for. Input validation
    should have refused it; this is the last line, and a 500 naming the
    value is better than an injected rule."""

    def __init__(self, value: str):
        super().__init__("render firewall rules", f"refusing {value!r}: empty, or holds whitespace or a control character")

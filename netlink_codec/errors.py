"""The one error type the codec raises."""


class DecodeError(ValueError):
    """A datagram, message or attribute could not be decoded.

    ``offset`` is the byte offset of the problem from the start of the buffer that was
    handed to the decoder (for a message: from the start of its nlmsghdr), so the kernel
    layer can report it as extack ``NLMSGERR_ATTR_OFFS``.
    """

    def __init__(self, message: str, offset: int = 0):
        super().__init__(f"{message} (at byte {offset})")
        self.reason = message
        self.offset = offset

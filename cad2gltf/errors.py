"""One error taxonomy with stable codes, shared by the core, tasks, the ledger and the DLQ.

Fatal problems raise a subclass of :class:`ConversionError`. Every class carries a stable
top-level ``code`` (what the ledger and the dead-letter sweep key on) and an optional
``subcode`` that says precisely what was wrong (``EMPTY_FILE``, ``FILE_TOO_LARGE``...).
Like ezdxf's ``DXFValueError(DXFError, ValueError)``, the classes also inherit the
matching built-in so callers that only know Python's exceptions still catch them.

Repairable problems are not raised: they are recorded as warnings in the conversion
report (see :class:`cad2gltf.scene.Scene.warnings`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ERROR_CODES",
    "PERMANENT_SUBCODES",
    "TRANSIENT_CODES",
    "ConversionError",
    "DetectorError",
    "InternalError",
    "InvalidInputError",
    "NetworkError",
    "ParsingError",
    "StorageError",
    "TimeoutError_",
    "classify",
    "is_transient",
]


class ConversionError(Exception):
    """Base class of every classified error.

    Attributes:
        code: stable top-level code, one of :data:`ERROR_CODES`.
        subcode: optional stable detail code (``EMPTY_FILE``, ``BAD_DXF`` ...).
        message: human readable explanation, safe to show to a user.
        details: small JSON-serialisable context (sizes, limits, entity handles).
    """

    code = "INTERNAL_ERROR"
    transient = False

    def __init__(
        self, message: str, *, subcode: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.subcode = subcode
        self.details = dict(details or {})

    @property
    def full_code(self) -> str:
        """``CODE`` or ``CODE/SUBCODE``, the form shown to users."""
        return f"{self.code}/{self.subcode}" if self.subcode else self.code

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly representation used by the CLI, the ledger and dead letters."""
        return {
            "error_code": self.code,
            "error_subcode": self.subcode,
            "message": self.message,
            "details": self.details,
            "transient": self.transient,
        }

    def __str__(self) -> str:
        return f"[{self.full_code}] {self.message}"


class InvalidInputError(ConversionError, ValueError):
    """The input was refused before parsing (``VALIDATION_ERROR``). Permanent."""

    code = "VALIDATION_ERROR"


class ParsingError(ConversionError, ValueError):
    """The input looked right but could not be read or converted (``PARSING_ERROR``)."""

    code = "PARSING_ERROR"


class StorageError(ConversionError, OSError):
    """Reading or writing objects failed (``STORAGE_ERROR``). Transient."""

    code = "STORAGE_ERROR"
    transient = True


class NetworkError(ConversionError, ConnectionError):
    """A remote service could not be reached (``NETWORK_ERROR``). Transient."""

    code = "NETWORK_ERROR"
    transient = True


class TimeoutError_(ConversionError, TimeoutError):
    """A step ran past its time limit (``TIMEOUT_ERROR``). Transient."""

    code = "TIMEOUT_ERROR"
    transient = True


class DetectorError(ConversionError, RuntimeError):
    """The symbol detector could not be loaded or run (``DETECTOR_ERROR``)."""

    code = "DETECTOR_ERROR"


class InternalError(ConversionError, RuntimeError):
    """A bug: something that should not happen did (``INTERNAL_ERROR``)."""

    code = "INTERNAL_ERROR"


ERROR_CODES: tuple[str, ...] = (
    "VALIDATION_ERROR",
    "PARSING_ERROR",
    "STORAGE_ERROR",
    "NETWORK_ERROR",
    "TIMEOUT_ERROR",
    "DETECTOR_ERROR",
    "INTERNAL_ERROR",
)
TRANSIENT_CODES: frozenset[str] = frozenset({"STORAGE_ERROR", "NETWORK_ERROR", "TIMEOUT_ERROR"})


def classify(exc: BaseException) -> ConversionError:
    """Map any exception onto the taxonomy.

    Args:
        exc: the exception to classify.

    Returns:
        ``exc`` itself when it is already a :class:`ConversionError`, otherwise a new
        classified error (``MemoryError`` and unknown exceptions become
        ``INTERNAL_ERROR``; connection problems ``NETWORK_ERROR``; other ``OSError``
        ``STORAGE_ERROR``; ``TimeoutError`` ``TIMEOUT_ERROR``).
    """
    if isinstance(exc, ConversionError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, TimeoutError):
        return TimeoutError_(str(exc) or name, subcode="TIMEOUT")
    if isinstance(exc, ConnectionError):
        return NetworkError(str(exc) or name, subcode="CONNECTION")
    if isinstance(exc, MemoryError):
        return InternalError("out of memory while converting", subcode="OUT_OF_MEMORY")
    if isinstance(exc, OSError):
        return StorageError(f"{name}: {exc}", subcode="IO")
    return InternalError(f"{name}: {exc}", subcode="UNEXPECTED")


#: ``CODE/SUBCODE`` pairs under a transient code that are permanent all the same (the
#: storage layer raises them as ``PermanentStorageError``): retrying cannot help.
PERMANENT_SUBCODES: frozenset[str] = frozenset({
    "STORAGE_ERROR/ACCESS_DENIED", "STORAGE_ERROR/REJECTED",
})


def is_transient(code_or_exc: str | BaseException) -> bool:
    """True when an error (or an error code such as ``STORAGE_ERROR/UNAVAILABLE``) is
    worth retrying."""
    if isinstance(code_or_exc, BaseException):
        return classify(code_or_exc).transient
    if code_or_exc in PERMANENT_SUBCODES:
        return False
    return code_or_exc.split("/", 1)[0] in TRANSIENT_CODES

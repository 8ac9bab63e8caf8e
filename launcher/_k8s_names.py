"""Values Kubernetes takes, checked before they reach a manifest (pure): object names, node
labels, counts, image references, and Docker's byte and CPU numbers as Kubernetes quantities.
Error texts are apimachinery's own where it has one (``pkg/util/validation/validation.go``).
"""

from __future__ import annotations

import math
import re

from launcher._build import parse_image_ref

__all__ = [
    "K8sValueError",
    "parse_count",
    "parse_dns_label",
    "parse_dns_subdomain",
    "parse_image",
    "parse_node_selector",
    "quantity_bytes",
    "quantity_cpu",
]


class K8sValueError(ValueError):
    """A value Kubernetes would refuse; the text is apimachinery's own where it has one."""


_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(rf"{_DNS1123.pattern}(\.{_DNS1123.pattern})*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME.pattern})?")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def parse_dns_label(value: str, *, dns1035: bool = False) -> str:
    """A name Kubernetes takes for a Service (``dns1035``) or a namespace (RFC 1123 label)."""
    if dns1035:
        rx, what, start = _DNS1035, "a DNS-1035 label", "an alphabetic character"
    else:
        rx, what, start = _DNS1123, "a lowercase RFC 1123 label", "an alphanumeric character"
    if len(value) > 63:
        raise K8sValueError(f"must be no more than 63 characters ({what})")
    if not rx.fullmatch(value):
        raise K8sValueError(f"{what} must consist of lower case alphanumeric characters or '-', "
                            f"start with {start}, and end with an alphanumeric character "
                            f"(regex used for validation is '{rx.pattern}')")
    return value


def parse_dns_subdomain(value: str) -> str:
    """An object name such as a PersistentVolumeClaim's or a RuntimeClass's."""
    if len(value) > 253 or not _SUBDOMAIN.fullmatch(value):
        raise K8sValueError("a lowercase RFC 1123 subdomain must consist of lower case "
                            "alphanumeric characters, '-' or '.', and must start and end with an "
                            "alphanumeric character (regex used for validation is "
                            f"'{_SUBDOMAIN.pattern}')")
    return value


def _label_key(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        raise K8sValueError("prefix part must be a lowercase RFC 1123 subdomain")
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        raise K8sValueError("name part must consist of alphanumeric characters, '-', '_' or "
                            "'.', and must start and end with an alphanumeric character, at "
                            "most 63 characters")
    return key


def parse_node_selector(value: str) -> tuple[str, str]:
    """``KEY=VALUE``: a node label the pods must land on."""
    key, eq, label = value.partition("=")
    if not eq:
        raise K8sValueError("expected KEY=VALUE")
    _label_key(key)
    if len(label) > 63 or not _LABEL_VALUE.fullmatch(label):
        raise K8sValueError("a valid label must be an empty string or consist of alphanumeric "
                            "characters, '-', '_' or '.', and must start and end with an "
                            "alphanumeric character, at most 63 characters")
    return key, label


def parse_count(value: str, minimum: int) -> int:
    try:
        count = int(value, 10)
    except ValueError:
        raise K8sValueError("not an integer") from None
    if count < minimum:
        raise K8sValueError(f"must be at least {minimum}")
    return count


def parse_image(value: str) -> str:
    """An image reference a kubelet pulls: ``[REGISTRY/]REPO[:TAG][@sha256:DIGEST]``."""
    name, at, digest = value.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise K8sValueError("the digest must be sha256: and 64 hex digits")
    try:
        parse_image_ref(name)
    except ValueError as exc:
        raise K8sValueError(str(exc)) from None
    return value


# --- quantities -----------------------------------------------------------------------------

_BINARY = (("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10))


def quantity_bytes(n: int) -> str:
    """Bytes as a Kubernetes quantity: the largest binary suffix that divides it (1g → 1Gi)."""
    for suffix, shift in _BINARY:
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{suffix}"
    return str(n)


def quantity_cpu(nano_cpus: int) -> str:
    """``NanoCpus`` as a CPU quantity: whole CPUs, else millicores (Kubernetes' finest unit,
    so a fraction of one rounds up)."""
    if nano_cpus % 1_000_000_000 == 0:
        return str(nano_cpus // 1_000_000_000)
    return f"{math.ceil(nano_cpus / 1_000_000)}m"

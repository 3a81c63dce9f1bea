"""The audit trail: one hash-chained record per decision, in JSON lines and SQLite."""

from veil.audit.log import AuditError, AuditLog
from veil.audit.record import new_decision_id

__all__ = ["AuditError", "AuditLog", "new_decision_id"]

"""Who is acting: users, roles, the acting principal and authorization checks used by every service."""

from backend.identity.principal import SYSTEM, PermissionDenied, Principal, Role, require_role

__all__ = ["SYSTEM", "PermissionDenied", "Principal", "Role", "require_role"]

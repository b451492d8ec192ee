"""Who is acting: users, roles, the acting principal and authorization checks used by every service."""

from backend.identity.principal import SYSTEM, PermissionDenied, Principal, Role, parse_role, require_role

__all__ = ["SYSTEM", "PermissionDenied", "Principal", "Role", "parse_role", "require_role"]

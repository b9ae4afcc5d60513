"""Fixed vocabularies shared by the output records."""

from enum import StrEnum


class ReasonCode(StrEnum):
    """Why an allocation was short of full, or why an exception was opened."""

    STOCKOUT = "STOCKOUT"
    PARTIAL_FILL = "PARTIAL_FILL"
    CREDIT_HOLD = "CREDIT_HOLD"
    BELOW_MARGIN = "BELOW_MARGIN"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    SPLIT_REQUIRED = "SPLIT_REQUIRED"
    PROTECTED_STOCK = "PROTECTED_STOCK"
    NODE_EXCLUDED = "NODE_EXCLUDED"
    SHORT_SHIPPED = "SHORT_SHIPPED"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    ROUTE_DELAY_RISK = "ROUTE_DELAY_RISK"
    DATA_QUALITY = "DATA_QUALITY"


class Severity(StrEnum):
    """How urgently a human should look."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class OwnerRole(StrEnum):
    """The role expected to act on an exception or alert."""

    PLANNER = "planner"
    CREDIT_CONTROLLER = "credit_controller"
    CUSTOMER_SERVICE = "customer_service"
    LOGISTICS = "logistics"
    INTEGRATION = "integration"
    APPROVER = "approver"

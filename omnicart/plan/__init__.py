"""The tracking plan: every event type the product accepts, with the properties each one carries.

Built-in events are declared in ``omnicart/plan/events/``; a shop declares its own the same way in
the folder ``OMNICART_PLAN_DIR`` names (``plan/`` by default). The API refuses events the plan does
not declare or whose properties break its schema, and ``omnicart validate`` type-checks journeys
against it, so a journey can only read what events really carry.
"""

from omnicart.plan.catalog import EventSpec, TrackingPlan, default_plan, load_plan
from omnicart.plan.validate import problems

__all__ = ["EventSpec", "TrackingPlan", "default_plan", "load_plan", "problems"]

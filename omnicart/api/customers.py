"""``GET /v1/customers``: find customers in the profile projection, for a shop's back office and the console.

Behind the ingest API's bearer token (``OMNICART_API_TOKEN``). Answers the profile as the projection
holds it (``omnicart.customers.profiles``), never the keyed hashes it is searched by. Ids that are
emails travel in the URL: see docs/PRIVACY.md about access logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from omnicart.customers.profiles import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    BadCursor,
    CustomerProfile,
    CustomerProfiles,
    Page,
)


class CustomerPage(BaseModel):
    """Matching customers; ask again with ``cursor=next_cursor`` for more (null: no more)."""

    customers: list[CustomerProfile]
    next_cursor: str | None = None


def customers_router(require_token: Callable[..., None], profiles: CustomerProfiles) -> APIRouter:
    """The routes, reading ``profiles``."""
    router = APIRouter(dependencies=[Depends(require_token)], tags=["customers"])
    unauthorised: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or wrong bearer token."}}

    @router.get(
        "/v1/customers",
        response_model=CustomerPage,
        summary="Find customers by email, phone or text",
        responses={**unauthorised, 422: {"description": "More than one of email, phone, q; or a bad cursor."}},
    )
    def find_customers(
        email: Annotated[str | None, Query(max_length=254, description="Exact address, any case.")] = None,
        phone: Annotated[str | None, Query(max_length=16, description="Exact E.164 number.")] = None,
        q: Annotated[str | None, Query(min_length=1, max_length=254, description="Part of id, email, phone.")] = None,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> CustomerPage:
        """Customers with this `email` or `phone` (also those whose plain copy is past retention:
        they are found by keyed hash), or whose id, email or phone contains `q`; with none of
        them, everyone. Pages of `limit` for `q` and everyone."""
        if sum(value is not None for value in (email, phone, q)) > 1:
            raise HTTPException(status_code=422, detail="give at most one of email, phone and q")
        if email is not None:
            return CustomerPage(customers=profiles.find_by_email(email))
        if phone is not None:
            return CustomerPage(customers=profiles.find_by_phone(phone))
        try:
            page = profiles.search(q, cursor, limit) if q is not None else profiles.everyone(cursor, limit)
        except BadCursor as error:
            raise HTTPException(status_code=422, detail=f"cursor: {error}") from None
        return _answer(page)

    @router.get(
        "/v1/customers/{customer_id}",
        response_model=CustomerProfile,
        summary="One customer's profile",
        responses={**unauthorised, 404: {"description": "No profile for this id (never seen, or forgotten)."}},
    )
    def get_customer(customer_id: str) -> CustomerProfile:
        """The customer's profile as the ingest side last learned it from their events."""
        profile = profiles.find_by_id(customer_id)
        if profile is None:
            raise HTTPException(status_code=404, detail="no such customer")
        return profile

    return router


def _answer(page: Page) -> CustomerPage:
    return CustomerPage(customers=page.customers, next_cursor=page.next_cursor)

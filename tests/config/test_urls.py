"""The URLs a person or a platform reaches first."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_site_root_leads_to_the_admin(client: Client) -> None:
    """Before: 404, where ``heroku open`` lands."""
    response = client.get("/", follow=True)
    assert response.redirect_chain[0] == ("/admin/", 302)
    assert response.status_code == 200

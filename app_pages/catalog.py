"""Catalog page: drawn by eproduct_ui.views.catalog inside the error boundary."""

from eproduct_ui.guard import page_boundary
from eproduct_ui.views import catalog

page_boundary(catalog.render)

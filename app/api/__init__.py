"""JSON routes, one module per resource, schemas beside them."""

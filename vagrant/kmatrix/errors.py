"""The matrix's own errors: one line each, turned into an exit status by cli."""


class MatrixError(Exception):
    """Something the matrix itself could not do (fetch, build, boot)."""

"""Errors a user can act on. The command line prints them as one line and exits non-zero."""


class EdgetrackError(Exception):
    """Base of every error whose message tells the user what is wrong and what to do."""


class BundleError(EdgetrackError):
    """A bundle directory that cannot be trusted: schema, files, checksums or shapes."""


class BackendError(EdgetrackError):
    """An inference backend that is missing, cannot load a model or cannot run it."""


class SourceError(EdgetrackError):
    """A video, image folder or dataset that cannot be read."""


class InputError(EdgetrackError):
    """Data the runtime cannot use: a frame, an initial box, or boxes to score."""


class OutputError(EdgetrackError):
    """A result file, recording or report that cannot be written where it was asked for."""

from _tinynet import TinyNet  # noqa: F401  (the package's own copy, as a real package has)

from .etcd import etcd  # noqa: F401  (the fixture)

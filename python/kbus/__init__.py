"""kbus: a pure-Python client for kbus, the userspace KBUS message bus.

``import kbus`` gives everything public of ``kbus.ksock`` (Ksock) and
``kbus.messages`` (Message, Announcement, Request, Reply, Status, MessageId,
OrigFrom, reply_to, stateful_request, read_bindings, ...), as the original
KBUS Python package did.
"""

from kbus.messages import *      # noqa: F401,F403
from kbus.ksock import *         # noqa: F401,F403
from kbus.messages import (      # noqa: F401  (helpers the original exposed)
    _MessageHeaderStruct, _EntireMessageStructBaseclass, _struct_to_bytes,
    _struct_from_bytes, _ReplierBindEventHeader)

__version__ = '0.1.0'

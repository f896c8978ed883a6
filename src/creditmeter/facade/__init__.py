"""The verbs of ``CreditMeter``, grouped by what they are about.

Each module holds one group as a mixin class over :class:`~creditmeter.facade.base.MeterBase`
(the way redis-py groups its commands); ``creditmeter.meter.CreditMeter`` puts them
together. A verb checks and shapes its arguments and runs a use case of ``service/`` in a
unit of work; nothing more.
"""

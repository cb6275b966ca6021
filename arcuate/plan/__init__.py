"""The planner: AST -> Plan, pure. Imports ``syntax``, ``format`` and the bottom layer only;
what the backends can do arrives as the plain data of :mod:`arcuate.plan.capabilities`."""

"""The ground floor: atomic files, statistics, run stability, and the host fingerprint with its ISA facts.

Nothing here imports another edgeopt subpackage; the measurement worker imports from here.
"""

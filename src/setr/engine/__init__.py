"""Training: the one loop (``loop.py``) with its task plug-ins, training states, sampler, schedules, losses."""

"""Student selection by reinforcement learning: a policy shrinks a teacher group by group, rewarded for students
that are small and accurate (``edgetrack search-student``)."""

"""The model file: what a trained or fitted model holds (its kind's settings, the
preprocessing, the schedule and where training stands, the weights, the operating point)
and how it is saved and loaded, safely. Above the kinds; below segmenting and training,
which meet here."""

"""What people look at: the HTML pages of ``evaluate -o``, ``segment --report`` and
``train --report``, their thumbnails and the ROC, PRO and overlap plots. Above evaluation;
only the command line is above it."""

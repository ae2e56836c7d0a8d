"""``xfrmd lag-report``: the LAG offload review's scenarios run on every LAG model and every
pairing of lower devices, as one matrix a reviewer can attach to the thread.

``report.py`` builds the matrix (:func:`~xfrmd.lagreport.report.run_report`),
``scenarios.py`` says what is measured, ``lab.py`` is the bench, ``render.py`` prints it
as text, JSON or a self-contained HTML page, ``cli.py`` is the command. This package's
``__init__`` imports nothing: ``xfrmd --help`` does not load the kernel model."""

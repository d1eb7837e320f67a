"""Reading and writing: image files and which images a command works on, MVTec-layout
datasets and their masks, random training patches and patch folders, synthetic defects,
atomic output files. NumPy and OpenCV only, no torch; above the ground floor (``errors``,
``settings``), below everything else."""

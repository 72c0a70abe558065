"""The synthetic echo cohort: the package's embedded default dataset (no real echo data needed).

``anatomy`` samples a study's heart, preset and videos; ``heart`` turns the heart into tissue
reflectivity over a cardiac cycle; ``shapes`` holds the drawing primitives; ``render`` forms
ultrasound frames from it; ``dicom`` writes a cine as DICOM; ``cohort`` puts a cohort together.
"""

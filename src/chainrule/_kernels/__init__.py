"""Private helpers shared by the engine and the layers above it: which kernels run (`backend`: NumPy, or
numba where installed), memory (`memory`: C-ordered copies, a pool of reusable arrays) and the scatter-add
of rows (`rows`, compiled in `numba_rows`). Nothing here imports any other part of chainrule.
"""

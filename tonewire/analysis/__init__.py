"""Pure DSP on float32 arrays: no I/O, no asyncio. See docs/analysis.md for every heuristic."""

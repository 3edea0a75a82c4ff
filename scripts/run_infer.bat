@echo off
rem One-click continuation: 8 bars, 4 candidates, written to .\candidates.
rem   scripts\run_infer.bat CONTEXT.mid [MODEL]
rem Choose the Python with uv's own settings, e.g. set UV_PYTHON=3.12 before running.
setlocal
set "CONTEXT=%~1"
if "%CONTEXT%"=="" set "CONTEXT=examples\pop909_099_opening.mid"
if "%~2"=="" (
  uv run pianomuse complete "%CONTEXT%" --bars 8 --candidates 4 -o candidates
) else (
  uv run pianomuse complete "%CONTEXT%" --bars 8 --candidates 4 -o candidates --model "%~2"
)
endlocal

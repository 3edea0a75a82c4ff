@echo off
rem One-click training: prepares the MIDI folder (cached) and trains the `small` preset.
rem   scripts\run_train.bat [MIDI_OR_PREPARED_DIR] [OUTPUT_DIR]
rem Choose the Python with uv's own settings, e.g. set UV_PYTHON=3.12 before running.
setlocal
set "DATA=%~1"
if "%DATA%"=="" set "DATA=tests\data"
set "OUT=%~2"
if "%OUT%"=="" set "OUT=runs\small"
uv run pianomuse train --data-path "%DATA%" --output-dir "%OUT%" --preset small
endlocal

"""SDPose Studio: `python app.py` starts the Gradio app (also the Hugging Face Spaces entry point).

    python app.py --weights runs/t/final --samples ../shared/data --port 7860
    SDPOSE_WEIGHTS=hf://org/repo python app.py

The command line, building and launching live in app/main.py (`python app.py --help` lists the options).
"""

from __future__ import annotations

from app.main import main

if __name__ == "__main__":
    main()

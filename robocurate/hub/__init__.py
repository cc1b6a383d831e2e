"""Publishing to the Hugging Face Hub: preflight checks, upload plans, pushes."""

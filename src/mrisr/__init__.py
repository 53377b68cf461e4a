"""mrisr: through-plane super-resolution of thick-slice MRI."""

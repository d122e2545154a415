"""The studio's tabs, one module each: `build_tab(ctx)` lays out the components and binds the module's
callbacks to them (app.components.bind); every callback returns a dict keyed by the components it fills."""

"""``resume(run_dir, x, y)``: continue a training run from its latest good checkpoint."""
from .checkpoint import load_checkpoint, read_run_config
from .loop import fit


def resume(run_dir, x, y, epochs=None, verbose=1, callbacks=None, validation_data=None, processes=1, **overrides):
    """Load the newest checkpoint's model (weights, optimizer, RNG and callback state) and
    continue ``fit`` with the arguments saved in ``run_dir/run.json``; returns ``(model, history)``.

    ``epochs``: the total number of epochs to reach (default: the run's own). ``overrides``
    replace saved fit arguments (batch_size, shuffle, seed, augment, validation_split, monitor,
    steps_per_epoch). ``x, y`` must be the same training data for the resumed run to be exact.
    ``processes``: as ``Model.use_processes`` (2 splits each step over two processes).
    """
    from ..datasets import augment as augment_mod
    model, state = load_checkpoint(run_dir)
    if not model.compiled:
        raise ValueError(f"{run_dir}: the checkpoint has no optimizer/loss configuration; cannot resume")
    if processes != 1:
        model.use_processes(processes)
    saved = dict(read_run_config(run_dir).get("fit") or state.get("fit") or {})
    args = {k: saved[k] for k in ("batch_size", "shuffle", "seed", "validation_split", "monitor",
                                  "steps_per_epoch") if saved.get(k) is not None}
    aug = saved.get("augment")
    if aug:
        args["augment"] = augment_mod.from_config(aug)
    args.update(overrides)
    if isinstance(args.get("augment"), str):
        args["augment"] = augment_mod.parse(args["augment"])
    total = epochs if epochs is not None else saved.get("epochs", state.get("epoch", 0))
    history = fit(model, x, y, epochs=total, verbose=verbose, callbacks=callbacks,
                  validation_data=validation_data, run_dir=run_dir, resume=True, **args)
    return model, history

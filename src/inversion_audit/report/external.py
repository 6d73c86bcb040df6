"""The report's "Model audited" section: the external model a ``[model]`` study audited."""

from __future__ import annotations

__all__ = ["external_markdown"]


def external_markdown(record: dict | None) -> list[str]:
    """The report's "Model audited" section from the study's ``external_model.json``
    (:meth:`~inversion_audit.study.index.StudyIndex.external_record`); empty for the paper's
    protocol (``record`` ``None``)."""
    if record is None:
        return []
    lines = ["## Model audited", ""]
    for variant, m in record.items():
        if not isinstance(m, dict):
            continue
        lat = m["latent"]
        lines.append(
            f"- {variant}: {m['source']} model {m['network']} ({m['weights_file']}, sha256 "
            f"{m['weights_sha256']}), input {m['in_channels']} x {' x '.join(map(str, m['grid']))}; "
            f"latent tapped at module `{lat['module']}`, shape {lat['shape']}"
            + (f"; skips at {', '.join(f'`{s}`' for s in lat['skips'])}" if lat["skips"] else "")
        )
        lines += [f"  - preprocessing differs: {d}" for d in m.get("preprocess_differences", [])]
        if m.get("dice"):
            lines.append(f"  - Dice: {m['dice']}")
    lines += [
        f"- {record.get('members', '?')} members (the private set), {record.get('attack', '?')} "
        "attack subjects"
        + (
            f", {record['holdout']} non-members (the holdout: reconstructed and ranked with the "
            "members, trained on by neither the model nor the decoder)"
            if record.get("holdout")
            else ""
        )
        + "; no k-fold retraining.",
        "",
    ]
    return lines

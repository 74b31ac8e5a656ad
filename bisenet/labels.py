"""The 19 label ids of the published face-parsing BiSeNet (`79999_iter.pth`).

This is the order of the face-parsing.PyTorch weights, which differs from the official
CelebAMask-HQ order; the FFHQ-Wrinkle label maps (etcs/face_parsed_labels) use these ids.
"""

from __future__ import annotations

BACKGROUND = 0
SKIN = 1
L_BROW = 2
R_BROW = 3
L_EYE = 4
R_EYE = 5
EYE_G = 6  # eyeglasses
L_EAR = 7
R_EAR = 8
EAR_R = 9  # earring
NOSE = 10
MOUTH = 11
U_LIP = 12
L_LIP = 13
NECK = 14
NECK_L = 15  # necklace
CLOTH = 16
HAIR = 17
HAT = 18

N_CLASSES = 19

LABEL_NAMES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
    "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)

# What the FFHQ-Wrinkle data set keeps as "face" in masked_face_images.
FACE_LABELS: tuple[int, ...] = (SKIN, NOSE)


def parse_labels(values: list[str] | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """Label ids from numbers or names (e.g. ["1", "nose"]); raises ValueError on an unknown one."""
    out = []
    for v in values:
        text = str(v).strip().lower()
        if text.isdigit():
            n = int(text)
            if not 0 <= n < N_CLASSES:
                raise ValueError(f"label id {n} is outside 0..{N_CLASSES - 1}")
            out.append(n)
        elif text in LABEL_NAMES:
            out.append(LABEL_NAMES.index(text))
        else:
            raise ValueError(f"unknown label '{v}' (use 0..18 or one of {', '.join(LABEL_NAMES)})")
    return tuple(dict.fromkeys(out))


def label_arg(text: str) -> int:
    """An argparse `type` for one label id or name (for --keep): a clear error on a bad one."""
    import argparse

    try:
        return parse_labels([text])[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

#!/usr/bin/env bash
# The main job on a fresh machine: install, then compress and decompress a photo that ships with
# scikit-image (no ../shared needed), with the offline default models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
mkdir -p demo
python -c "from skimage import data; from PIL import Image; Image.fromarray(data.astronaut()).save('demo/astronaut.png')"
stic encode demo/astronaut.png -o demo/astronaut.stic --force --quality 1 \
  --caption "An astronaut in an orange spacesuit poses in front of an American flag, holding a white helmet, with a model of the space shuttle behind her."
stic info demo/astronaut.stic
stic decode demo/astronaut.stic -o demo/astronaut_decoded.png --force
echo "original: demo/astronaut.png ($(stat -c %s demo/astronaut.png) bytes)  decoded: demo/astronaut_decoded.png"

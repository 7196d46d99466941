#!/bin/sh
# Download the official PIPs++ reference model into ./reference_model/.
# Downloads to a temporary name first and extracts into a temporary folder, so a failed
# or interrupted run leaves nothing half-done.
set -u
URL='https://www.dropbox.com/scl/fi/czdlt2zc2ji2b7zd0pvoe/reference_model.tar.gz?rlkey=56ebq4g5dk01kyq8kuismev14&dl=1'
DEST=reference_model
CKPT=model-000200000.pth

if [ -f "$DEST/$CKPT" ]; then
    echo "$DEST/$CKPT is already here."
    exit 0
fi
work=$(mktemp -d "./.reference_model.XXXXXX") || { echo "error: cannot create a temporary folder here" >&2; exit 1; }
trap 'rm -rf "$work"' EXIT INT TERM

echo "downloading the reference model ..."
if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 2 -o "$work/reference_model.tar.gz" "$URL" || fetch_failed=1
elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$work/reference_model.tar.gz" "$URL" || fetch_failed=1
else
    echo "error: neither curl nor wget is installed; install one and run this again" >&2
    exit 1
fi
if [ "${fetch_failed:-0}" = 1 ]; then
    echo "error: could not download $URL (no network?); nothing was changed" >&2
    exit 1
fi

mkdir "$work/extract"
if ! tar -xzf "$work/reference_model.tar.gz" -C "$work/extract"; then
    echo "error: the downloaded archive is not a valid .tar.gz; nothing was changed" >&2
    exit 1
fi
found=$(find "$work/extract" -name "$CKPT" | head -n 1)
if [ -z "$found" ]; then
    echo "error: the archive holds no $CKPT; nothing was changed" >&2
    exit 1
fi
rm -rf "$DEST"
mv "$(dirname "$found")" "$DEST"
echo "saved $DEST/$CKPT"

#!/bin/sh
# Fetch the official PIPs++ reference model into ./reference_model/ (next to this script).
# Usage: sh get_reference_model.sh
#
# The archive is downloaded and unpacked inside a temporary folder, and only a checked
# reference_model/model-000200000.pth is moved into place, so a failed or interrupted run
# leaves nothing behind. Needs curl or wget, and tar.
set -u

URL='https://www.dropbox.com/scl/fi/czdlt2zc2ji2b7zd0pvoe/reference_model.tar.gz?rlkey=56ebq4g5dk01kyq8kuismev14&dl=1'
DEST=reference_model
CKPT=model-000200000.pth

fail() {
    echo "error: $1; nothing was changed" >&2
    exit 1
}

cd "$(dirname "$0")" || fail "cannot enter the folder of this script"

if [ -f "$DEST/$CKPT" ]; then
    echo "$DEST/$CKPT is already here"
    exit 0
fi
if [ -e "$DEST" ]; then
    fail "./$DEST exists but holds no $CKPT; move it away and run this again"
fi

work=".$DEST.partial.$$"
mkdir "$work" || fail "cannot create the temporary folder $work here"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
archive="$work/reference_model.tar.gz"

echo "downloading the reference model from dropbox.com ..."
if command -v curl >/dev/null 2>&1; then
    curl -fsL --retry 2 -o "$archive" "$URL"
    status=$?
    tool=curl
elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$archive" "$URL"
    status=$?
    tool=wget
else
    fail "neither curl nor wget is installed; install one and run this again"
fi
if [ "$status" -ne 0 ]; then
    fail "could not download the reference model ($tool exit code $status: no network?)"
fi

mkdir "$work/extract" || fail "cannot create $work/extract"
tar -xzf "$archive" -C "$work/extract" 2>/dev/null || fail "the download is not a valid .tar.gz archive"
found=$(find "$work/extract" -name "$CKPT" -type f | head -n 1)
if [ -z "$found" ] || [ ! -s "$found" ]; then
    fail "the downloaded archive holds no $CKPT"
fi
mv "$(dirname "$found")" "$DEST" || fail "cannot move the model into ./$DEST"
echo "saved $DEST/$CKPT"

#!/usr/bin/env bash
# Makes what benchmarks/gpu_check.py needs on a GPU machine that has JAX but no TensorFlow and reaches no
# package index: wheels of Keras 3 and of its dependencies such images lack (namex, optree), built for that
# machine's Python, a wheel of tfimp itself, and Fashion-MNIST's idx files (about 30 MB). Run it here, in
# the repository's root, then carry DIR to the machine and run the two lines gpu_check.py's docstring shows.
#
#   bash benchmarks/gpu_wheels.sh [DIR] [PYTHON_VERSION]      (defaults: .whl 3.12)
set -euo pipefail
dir=${1:-.whl}
python_version=${2:-3.12}
keras_version=$(python3 -c "import importlib.metadata as m; print(m.version('keras'))" 2>/dev/null || echo 3.15.1)
mkdir -p "$dir"
rm -f "$dir"/keras-*.whl "$dir"/namex-*.whl "$dir"/optree-*.whl "$dir"/tfimp-*.whl
platforms=()
for platform in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$platform")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
  "${platforms[@]}" -d "$dir" "keras==$keras_version" namex optree
python3 -m pip wheel -q --no-deps --no-build-isolation -w "$dir" .
source=/usr/share/datasets/fashion-mnist
if [ ! -d "$source" ]; then
  echo "gpu_wheels: no $source (apt-get install dataset-fashion-mnist); copy Fashion-MNIST's idx files into $dir/fashion-mnist" >&2
  exit 1
fi
mkdir -p "$dir/fashion-mnist"
cp "$source"/*-ubyte.gz "$dir/fashion-mnist/"
ls -la "$dir" "$dir/fashion-mnist"

#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine that has no .NET: this machine's .NET runtime and the Release
# build of the tests (which holds the CLI too), into DIR (default .gpu-bundle), with a run.sh that unpacks them and runs
# the checks. Usage, from the repository root:
#   scripts/gpu-bundle.sh [DIR]          # here, with the SDK: builds, then writes DIR/{runtime,tests}.tar.xz and DIR/run.sh
#   bash DIR/run.sh                      # there, from the repository root (python3 unpacks; results in $OUT or ./gpu-results)
# The runtime is about 35 MB and the build about 5 MB once compressed; the models the checks read come from the
# repository's reference-data/ (TESTS_EXCEPT leaves out the test cases of a model not copied there).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu-bundle}
mkdir -p "$dir"
dotnet build -c Release tests/NativeGpt2.Tests >/dev/null
root=$(dirname "$(readlink -f "$(command -v dotnet)")")
# The host, and the two shared frameworks the CLI and the tests run on (ASP.NET Core: the server and its tests).
tar -C "$root" -cf - dotnet host shared/Microsoft.NETCore.App shared/Microsoft.AspNetCore.App | xz -6 -T0 > "$dir/runtime.tar.xz"
# The build without the models copied beside it (the checks read reference-data/), resource translations and API docs.
(cd tests/NativeGpt2.Tests/bin/Release/net10.0 &&
  find . -path ./models -prune -o -type f ! -name '*.xml' ! -regex '\./[a-z][a-z]\(-[A-Za-z]*\)?/.*' -print |
  tar -cf - -T -) | xz -6 -T0 > "$dir/tests.tar.xz"
cat > "$dir/run.sh" <<'RUN'
#!/usr/bin/env bash
# Unpacks the bundle's .NET runtime into /tmp/dotnet and its build beside this script, then runs scripts/gpu-check.sh
# with them; run from the repository root. TESTS_EXCEPT and OUT pass through.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p /tmp/dotnet "$here/bin"
python3 - "$here" <<'PY'
import sys, tarfile
here = sys.argv[1]
safe = {"filter": "tar"} if hasattr(tarfile, "data_filter") else {}   # Python 3.12 warns without a filter
tarfile.open(f"{here}/runtime.tar.xz").extractall("/tmp/dotnet", **safe)
tarfile.open(f"{here}/tests.tar.xz").extractall(f"{here}/bin", **safe)
PY
export DOTNET_ROOT=/tmp/dotnet DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
DOTNET=/tmp/dotnet/dotnet NATIVEGPT2="/tmp/dotnet/dotnet $here/bin/NativeGpt2.Cli.dll" TESTS="$here/bin/NativeGpt2.Tests.dll" \
  exec bash scripts/gpu-check.sh
RUN
chmod +x "$dir/run.sh"
du -sh "$dir"/*.tar.xz

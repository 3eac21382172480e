#!/usr/bin/env bash
# Make sure a real Chromium can be driven by Playwright on this machine, as the dashboard's
# browser tests expect: Debian's `chromium` (Playwright's own browser download needs a CDN these
# machines cannot reach) and a font with Chinese glyphs (`fonts-wqy-microhei`), so the Chinese
# pages render as text, not boxes. Idempotent; installing needs root. Prints the browser's path.
#
# The tests find the browser through COMPUTILITY_CHROMIUM (default /usr/bin/chromium).
set -euo pipefail

say() { echo >&2 "ensure-chromium: $*"; }
browser=${COMPUTILITY_CHROMIUM:-/usr/bin/chromium}

have_font() { fc-list :lang=zh 2>/dev/null | grep -q .; }

if [[ -x $browser ]] && have_font; then
  say "$("$browser" --version 2>/dev/null | head -n 1) at $browser; Chinese font present"
  echo "$browser"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  say "not root: cannot install Debian's chromium and fonts-wqy-microhei"
  exit 1
fi
say "installing Debian's chromium and fonts-wqy-microhei"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei fontconfig >/dev/null
if [[ ! -x $browser ]]; then
  say "chromium installed but $browser is missing"
  exit 1
fi
have_font || { say "no font with Chinese glyphs after installing fonts-wqy-microhei"; exit 1; }
say "$("$browser" --version 2>/dev/null | head -n 1) at $browser"
echo "$browser"

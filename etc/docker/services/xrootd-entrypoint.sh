#!/bin/sh
# One XRootD server: root:// on XRDPORT (default 1094), exporting XRD_EXPORT (default /rucio) with the folders
# of XRD_FOLDERS made first, as the xrootd account. The server computes adler32 itself and, unless XRD_TPC=0,
# takes part in root:// third-party copies (run by `xrdcp --server`), as a grid storage does.
# It asks no authentication: for a private container network only (a site runs GSI or tokens).
set -e
port="${XRDPORT:-1094}"
export_path="${XRD_EXPORT:-/rucio}"
install -d -o xrootd -g xrootd "$export_path" /var/spool/xrootd /run/xrootd
for folder in ${XRD_FOLDERS:-}; do
    install -d -o xrootd -g xrootd "$folder"
done
cat > /etc/xrootd/rucio-magic.cfg <<CFG
xrd.port $port
all.export $export_path
all.adminpath /var/spool/xrootd
all.pidpath /run/xrootd
xrootd.chksum adler32
CFG
if [ "${XRD_TPC:-1}" != "0" ]; then
    echo "ofs.tpc ttl 60 70 xfr 10 pgm /usr/bin/xrdcp --server" >> /etc/xrootd/rucio-magic.cfg
fi
exec setpriv --reuid=xrootd --regid=xrootd --init-groups xrootd -c /etc/xrootd/rucio-magic.cfg -n "${XRDHOST:-xrootd}"

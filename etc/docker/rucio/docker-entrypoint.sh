#!/bin/sh
# Serves Rucio's REST API under Apache httpd + mod_wsgi, as rucio/rucio-server does, configured by the same
# variables: RUCIO_HOSTNAME, RUCIO_SERVER_ADMIN, RUCIO_WSGI_DAEMON_PROCESSES, RUCIO_WSGI_DAEMON_THREADS,
# RUCIO_LOG_LEVEL, RUCIO_ENABLE_LOGS (+ RUCIO_HTTPD_LOG_DIR), RUCIO_HTTPD_TIMEOUT, RUCIO_METRICS_PORT,
# RUCIO_HEALTH_CHECK_PORT. TLS is left to what stands in front (an ingress, a proxy).
set -e
. /usr/local/lib/rucio-config.sh

if [ "${RUCIO_ENABLE_SSL:-False}" = "True" ]; then
    echo "docker-entrypoint: RUCIO_ENABLE_SSL=True is not served by this image: it answers plain HTTP on port 80;" \
         "terminate TLS in front of it" >&2
    exit 64
fi
rucio_config
rucio_trust_grid_cas
rucio_memcached 128

RUCIO_PYTHON_PATH=$(python3 -c "import os, rucio; print(os.path.dirname(rucio.__file__))")
if [ -n "${RUCIO_METRICS_PORT:-}" ] && [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
    export PROMETHEUS_MULTIPROC_DIR
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR" && chown www-data:www-data "$PROMETHEUS_MULTIPROC_DIR"
fi
if [ "${RUCIO_ENABLE_LOGS:-False}" = "True" ]; then
    logs="${RUCIO_HTTPD_LOG_DIR:-/var/log/apache2}"
    access="$logs/access_log" error="$logs/error_log"
else
    access=/dev/stdout error=/dev/stderr
fi

vhost() {  # port, WSGIScriptAlias lines
    cat <<VHOST
Listen $1
<VirtualHost *:$1>
 ${RUCIO_HOSTNAME:+ServerName $RUCIO_HOSTNAME:$1}
 ServerAdmin ${RUCIO_SERVER_ADMIN:-root@localhost}
 LogLevel ${RUCIO_LOG_LEVEL:-info}
 CustomLog $access combinedrucio
 ErrorLog $error
 AllowEncodedSlashes NoDecode
 RewriteEngine on
 RewriteCond %{REQUEST_METHOD} ^(TRACE|TRACK)
 RewriteRule .* - [F]
 $2
</VirtualHost>
VHOST
}

modules=/usr/lib/apache2/modules
conf=/etc/apache2/rucio-httpd.conf
{
    cat <<HTTPD
ServerRoot /etc/apache2
PidFile /run/apache2/httpd.pid
LoadModule mpm_event_module $modules/mod_mpm_event.so
LoadModule authz_core_module $modules/mod_authz_core.so
LoadModule headers_module $modules/mod_headers.so
LoadModule unique_id_module $modules/mod_unique_id.so
LoadModule rewrite_module $modules/mod_rewrite.so
LoadModule wsgi_module $modules/mod_wsgi.so
User www-data
Group www-data
ServerName ${RUCIO_HOSTNAME:-localhost}
Timeout ${RUCIO_HTTPD_TIMEOUT:-60}
ErrorLog $error
<Directory />
 AllowOverride None
 Require all granted
</Directory>
LogFormat "%h\t%t\t%{X-Rucio-Forwarded-For}i\t%T\t%D\t\"%{X-Rucio-Auth-Token}i\"\t%{X-Rucio-RequestId}i\t%{X-Rucio-Client-Ref}i\t\"%r\"\t%>s\t%b" combinedrucio
Header set X-Rucio-Host "%{HTTP_HOST}e"
RequestHeader add X-Rucio-RequestId "%{UNIQUE_ID}e"
WSGIRestrictEmbedded On
WSGIDaemonProcess rucio processes=${RUCIO_WSGI_DAEMON_PROCESSES:-4} threads=${RUCIO_WSGI_DAEMON_THREADS:-4}
WSGIApplicationGroup rucio
WSGIPassAuthorization On
HTTPD
    vhost 80 "WSGIScriptAlias / $RUCIO_PYTHON_PATH/web/rest/flaskapi/v1/main.py process-group=rucio application-group=rucio"
    if [ -n "${RUCIO_METRICS_PORT:-}" ]; then
        vhost "$RUCIO_METRICS_PORT" "WSGIScriptAlias /metrics $RUCIO_PYTHON_PATH/web/rest/metrics.py process-group=rucio application-group=rucio"
    fi
    if [ -n "${RUCIO_HEALTH_CHECK_PORT:-}" ]; then
        vhost "$RUCIO_HEALTH_CHECK_PORT" "WSGIScriptAlias /ping $RUCIO_PYTHON_PATH/web/rest/ping.py process-group=rucio application-group=rucio"
    fi
} > "$conf"
echo "=================== $conf ========================"
cat "$conf"

mkdir -p /run/apache2
rm -f /run/apache2/httpd.pid
exec apache2 -f "$conf" -DFOREGROUND

#!/bin/bash
# admin_session: a scripted shell session of the commands an administrator
# types: look around, search, archive, a little Python, talk to a local
# service. Run by the bench as `bash admin_session.sh SCRATCH PORT` with
# PATH=/usr/bin:/bin, so every command is found by its first exec.
#
# Each external command goes through x(), which counts it; no pipelines, so
# every count survives (a pipeline stage is a subshell). Prints
#   execs=<bash itself + every external command> tcp_connects=<n>
set -u
scratch=$1 port=$2
n=0 tcp=0
x() { n=$((n + 1)); "$@"; }

cd "$scratch"
x id > id.txt
x uname -a > uname.txt
x ls -la /etc > ls-etc.txt
x ls -lR /usr/share/doc > ls-doc.txt
x ps aux > ps.txt
x grep -c root ps.txt > /dev/null
x df -h > df.txt
x cat /etc/os-release > os-release.txt
x grep -r -I -l root /etc > grep-etc.txt 2> /dev/null
x wc -l grep-etc.txt > /dev/null
x find /usr -name '*.conf' > find-conf.txt
x sort find-conf.txt -o find-sorted.txt
x head -n 20 find-sorted.txt > /dev/null
x tar -cf etc.tar -C / etc 2> /dev/null
x tar -tf etc.tar > etc-list.txt
x du -sh etc.tar > /dev/null
x python3 -c 'import json, os; print(json.dumps(sorted(os.listdir("/etc"))[:10]))' > py.txt
x curl -s -o curl4.txt "http://127.0.0.1:$port/"
tcp=$((tcp + 1))
x curl -s -o curl6.txt "http://[::1]:$port/"
tcp=$((tcp + 1))
exec 3<> "/dev/tcp/127.0.0.1/$port"
tcp=$((tcp + 1))
printf 'GET / HTTP/1.0\r\n\r\n' >&3
x cat <&3 > devtcp.txt
exec 3<&-
x rm -f etc.tar
echo "execs=$((n + 1)) tcp_connects=$tcp"

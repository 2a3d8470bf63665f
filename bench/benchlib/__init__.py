"""The pieces of sessrec's benchmarks, shared by bench/run and bench/open_storm.py.

common     building the C workloads, timing them through `timed`, reading session files
workloads  the five workloads and the true count of what each one does
configs    one run of a workload under each configuration (unrecorded, floor, sessrec, auditd)
auditd     a bench auditd with syscall rules for one audit session, and the restore
report     the results as text, JSON and the Markdown section of docs/PERFORMANCE.md
"""

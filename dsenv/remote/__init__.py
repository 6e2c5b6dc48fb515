"""Remote Docker hosts over SSH: named hosts, the ssh command lines dsenv runs, port forwards that outlive the CLI,
and syncing a notebook folder to a volume on the remote and back."""

"""The training runtime, a layer under the commands: processes (`processes`), frames
held or streamed behind one interface (`data`, `streaming`), checkpoints (`run_state`)
and the session of epochs (`session`)."""

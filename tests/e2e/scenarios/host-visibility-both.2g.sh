# timeout: 120
# host-visibility.sh in both guests of the two-guest boot: guest 2 (cache=auto by default)
# and guest 3 (cache=never, where host changes must be visible without delay).
. "$E2E_DIR/scenarios/host-visibility.sh"

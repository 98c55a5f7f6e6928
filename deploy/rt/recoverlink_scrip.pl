# recoverlink callback for Request Tracker 5: the "Custom action commit code" of a scrip with the
# action "User Defined" and the template "Blank" (how to install it: deploy/rt/README.md).
#
# It posts one JSON document per ticket change to recoverlink's POST /webhook/itsm/rt, which
# dedupes on transaction_id. RT runs it inside the request of whoever changed the ticket, so the
# timeout is short and a failure is only logged: recoverlink's reconciliation poll still reads
# the change a little later. RT evaluates this code with $self set to the scrip's action.
use LWP::UserAgent;
use JSON ();

my $url    = RT->Config->Get('RecoverlinkURL');
my $secret = RT->Config->Get('RecoverlinkSecret');
unless ( $url && $secret ) {
    $RT::Logger->error('recoverlink scrip: set $RecoverlinkURL and $RecoverlinkSecret in RT_SiteConfig.pm');
    return 1;
}
my $field_name = RT->Config->Get('RecoverlinkCustomField') || 'CorrelationId';

my ( $ticket, $txn ) = ( $self->TicketObj, $self->TransactionObj );
my $is_status = ( $txn->Field || '' ) eq 'Status';
my $body = JSON::encode_json(
    {
        source         => 'rt',
        ticket_id      => 0 + $ticket->id,    # 0 + : a JSON number, whatever Perl last did with it
        transaction_id => 0 + $txn->id,
        status         => $ticket->Status,
        old_status     => ( $is_status ? $txn->OldValue : undef ),
        owner          => $ticket->OwnerObj->Name,
        creator        => $txn->CreatorObj->Name,
        correlation_id => scalar $ticket->FirstCustomFieldValue($field_name),
        updated_at     => $ticket->LastUpdatedObj->W3CDTF( Timezone => 'UTC' ),
    }
);

my $agent = LWP::UserAgent->new( timeout => 3, agent => 'rt-recoverlink-scrip/1' );
my $response = $agent->post(
    ( $url =~ s{/+$}{}r ) . '/webhook/itsm/rt',
    'Content-Type'  => 'application/json',
    'Authorization' => "Bearer $secret",
    Content         => $body,
);
unless ( $response->is_success ) {
    $RT::Logger->warning( 'recoverlink scrip: ticket ' . $ticket->id . ', transaction ' . $txn->id
          . ': POST to recoverlink failed: ' . $response->status_line );
}
return 1;

/*
 * recoverlink: tell recoverlink when someone changes one of its incidents.
 *
 * Business Rule on table `incident`, When: after, Update (see README.md beside this file).
 * Condition (the rule's Condition field):
 *   current.correlation_display == 'recoverlink' &&
 *   (current.state.changes() || current.assignment_group.changes() || current.assigned_to.changes())
 *
 * `after` rather than `async`: an async rule has no `previous` and cannot use changes().
 * executeAsync() sends without holding up the person's save. recoverlink answers 2xx quickly,
 * deduplicates on (sys_id, mod_count), ignores an older mod_count than one it has seen, and
 * recognises its own updates by `updated_by`; it also polls, in case a call is lost.
 */
(function executeRule(current, previous /*null when async*/) {
  if (current.getValue('correlation_display') != 'recoverlink') {
    return; // not one of recoverlink's incidents (the condition should already say so)
  }
  var r = new sn_ws.RESTMessageV2();
  r.setEndpoint(gs.getProperty('x_recoverlink.url') + '/webhook/itsm/servicenow');
  r.setHttpMethod('post');
  r.setRequestHeader('Content-Type', 'application/json');
  r.setRequestHeader('Authorization', 'Bearer ' + gs.getProperty('x_recoverlink.secret'));
  r.setHttpTimeout(5000);
  r.setRequestBody(JSON.stringify({
    source: 'servicenow',
    event: 'incident.updated',
    sys_id: current.getUniqueValue(),
    number: current.getValue('number'),
    correlation_id: current.getValue('correlation_id'),
    state: current.getValue('state'),
    previous_state: previous.getValue('state'),
    assignment_group: current.assignment_group.getDisplayValue(),
    assigned_to: current.assigned_to.getDisplayValue(),
    close_code: current.getValue('close_code'),
    close_notes: current.getValue('close_notes'),
    updated_at: current.getValue('sys_updated_on'),
    mod_count: current.getValue('sys_mod_count'),
    updated_by: current.getValue('sys_updated_by')
  }));
  r.executeAsync();
})(current, previous);
